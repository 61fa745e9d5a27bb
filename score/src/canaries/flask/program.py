from flask import Flask, request, jsonify

app = Flask(__name__)


@app.route("/hello")
def hello():
    return jsonify(greeting=f"hello {request.args.get('name', '')}")
