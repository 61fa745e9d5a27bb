"""transformers' side of the GGUF import test: loads the GGUF itself (with the `gguf` package)
and prints the token ids of TEXT and the f32 logits at every position, as JSON.

    gguf_reference.py GGUF_FILE TEXT
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

path, text = sys.argv[1], sys.argv[2]
folder, name = os.path.dirname(path), os.path.basename(path)
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
ids = tokenizer(text, add_special_tokens=False)["input_ids"]
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0]
json.dump({"ids": ids, "logits": logits.tolist()}, sys.stdout)
