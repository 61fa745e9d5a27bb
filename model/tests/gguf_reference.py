"""transformers' side of the GGUF import tests: loads the GGUF itself (transformers' own GGUF
loader) and, for each TEXT, writes its token ids, its f32 logits at every position and the
NEW_TOKENS ids greedy decoding adds (end of sequence suppressed, so both sides decode as long).

    gguf_reference.py GGUF_FILE OUT_DIR NEW_TOKENS TEXT...

OUT_DIR/reference.json: {"ids": [[...], ...], "greedy": [[...], ...]};
OUT_DIR/logits-K.f32: text K's logits, [positions, vocab] row-major little-endian f32.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

path, out, new_tokens, texts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
folder, name = os.path.dirname(path), os.path.basename(path)
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
result = {"ids": [], "greedy": []}
with torch.no_grad():
    for k, text in enumerate(texts):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        model(torch.tensor([ids])).logits[0].float().numpy().tofile(os.path.join(out, f"logits-{k}.f32"))
        generated = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                   max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        result["ids"].append(ids)
        result["greedy"].append(generated[0, len(ids):].tolist())
json.dump(result, open(os.path.join(out, "reference.json"), "w"))
