def get_email(db_path, username):
    conn = sqlite3.connect(db_path)
    cur = conn.cursor()
