"""The transformers side of model/bench/generate_vs_transformers.sh; mirrors model_bench.rs.

    transformers_bench.py throughput DIR N NEW | latency DIR NEW | load DIR | logits DIR | make-large DIR TOKENIZER_DIR LAYERS
                          | scenarios DIR PROMPTS_JSONL LIMIT N NEW TEMPERATURE

DEVICE=cuda and DTYPE=bf16 as for model_bench.
"""

import json
import os
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
          "### Instruction:\nCreate a Python function for this problem: Read a file from the uploads folder.\n\n"
          "### Response:\nimport os\n\ndef read_upload(name):\n")


DEVICE = os.environ.get("DEVICE", "cpu")
DTYPE = torch.bfloat16 if os.environ.get("DTYPE") == "bf16" else torch.float32


def sync():
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def load(d):
    return AutoModelForCausalLM.from_pretrained(d, dtype=DTYPE).to(DEVICE).eval()


def main():
    mode, d = sys.argv[1], sys.argv[2]
    if mode == "make-large":
        # Llama-shaped, 16k vocab, hidden 1024: 4 layers is about 370 MB in f32, 10 about 720 MB.
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=16000, hidden_size=1024, intermediate_size=4096, num_hidden_layers=int(sys.argv[4]),
                          num_attention_heads=16, num_key_value_heads=4, tie_word_embeddings=False)
        LlamaForCausalLM(cfg).save_pretrained(d, safe_serialization=True)
        AutoTokenizer.from_pretrained(sys.argv[3]).save_pretrained(d)
        return
    if mode == "scenarios":
        scenarios(d, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]))
        return
    t0 = time.perf_counter()
    model = load(d)
    load_s = time.perf_counter() - t0
    tok = AutoTokenizer.from_pretrained(d)
    ids = torch.tensor([tok(PROMPT)["input_ids"]], device=DEVICE)
    with torch.no_grad():
        if mode == "throughput":
            n, new = int(sys.argv[3]), int(sys.argv[4])
            sample = lambda k: model.generate(ids, do_sample=True, temperature=0.8, top_p=0.95, top_k=0,
                                              num_return_sequences=n, max_new_tokens=k, min_new_tokens=k,
                                              pad_token_id=0)
            # Untimed first: a GPU's first calls set up its libraries and load kernels.
            sample(4)
            sync()
            t = time.perf_counter()
            out = sample(new)
            sync()
            secs = time.perf_counter() - t
            tokens = (out.shape[1] - ids.shape[1]) * out.shape[0]
            print(json.dumps({"samples": out.shape[0], "new_tokens": tokens, "seconds": secs, "tokens_per_s": tokens / secs}))
        elif mode == "latency":
            new = int(sys.argv[3])
            best_prefill, best_decode = 1e9, 0.0
            for _ in range(5):
                t = time.perf_counter()
                o = model(ids, use_cache=True)
                nxt = o.logits[:, -1].argmax(-1, keepdim=True)
                best_prefill = min(best_prefill, time.perf_counter() - t)
                past = o.past_key_values
                t = time.perf_counter()
                for _ in range(new):
                    o = model(nxt, past_key_values=past, use_cache=True)
                    past = o.past_key_values
                    nxt = o.logits[:, -1].argmax(-1, keepdim=True)
                best_decode = max(best_decode, new / (time.perf_counter() - t))
            print(json.dumps({"prompt_tokens": ids.shape[1], "prefill_first_token_ms": best_prefill * 1e3,
                              "decode_tokens_per_s": best_decode}))
        elif mode == "load":
            print(json.dumps({"load_seconds": load_s}))
        elif mode == "logits":
            print(json.dumps({"logits": model(ids).logits[0, -1].float().cpu().tolist()}))


def scenarios(d, prompts_file, limit, n, new, temperature):
    """`generate`'s sampling of the first LIMIT prompts, as transformers users write it: one
    `generate` call per prompt for its N samples, ending at EOS or NEW tokens."""
    model, tok = load(d), AutoTokenizer.from_pretrained(d)
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    prompts = [json.loads(line)["prompt"] for line in open(prompts_file)][:limit]
    torch.manual_seed(0)
    tokens, secs = 0, 0.0
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([tok(prompt)["input_ids"]], device=DEVICE)
            t = time.perf_counter()
            out = model.generate(ids, do_sample=True, temperature=temperature, top_p=0.95, top_k=0,
                                 num_return_sequences=n, max_new_tokens=new, pad_token_id=min(eos))
            sync()
            secs += time.perf_counter() - t
            for row in out[:, ids.shape[1]:].tolist():
                # The tokens up to and with the first EOS; what follows is padding.
                ends = [i for i, x in enumerate(row) if x in eos]
                tokens += ends[0] + 1 if ends else len(row)
    print(json.dumps({"prompts": len(prompts), "samples": len(prompts) * n, "new_tokens": tokens, "seconds": secs,
                      "tokens_per_s": tokens / secs}))


if __name__ == "__main__":
    main()
