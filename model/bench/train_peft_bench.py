"""The PEFT + transformers side of model/bench/train_vs_peft.sh; mirrors train_bench.rs.

    train_peft_bench.py DIR BATCH SEQ STEPS [checkpoint] [device=cuda] [dtype=bf16]
    train_peft_bench.py make-100m DIR | make-1.3b DIR
"""
import json
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM


def main():
    if sys.argv[1] == "make-100m":
        # Llama-shaped, about 100M parameters: 12 layers, hidden 768, vocab 16k, tied embeddings.
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=16000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                          num_attention_heads=12, num_key_value_heads=4, tie_word_embeddings=True)
        LlamaForCausalLM(cfg).save_pretrained(sys.argv[2], safe_serialization=True)
        return
    if sys.argv[1] == "make-1.3b":
        # DeepSeek-Coder-1.3B-base's shape (its config.json), random weights in bf16.
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=32256, hidden_size=2048, intermediate_size=5504, num_hidden_layers=24,
                          num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=16384,
                          rope_theta=100000.0, rope_scaling={"type": "linear", "factor": 4.0},
                          rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=32013, eos_token_id=32014)
        LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(sys.argv[2], safe_serialization=True)
        return
    d, batch, seq, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    opts = dict(a.split("=", 1) for a in sys.argv[5:] if "=" in a)
    device = opts.get("device", "cpu")
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[opts.get("dtype", "f32")]
    model = AutoModelForCausalLM.from_pretrained(d, dtype=dtype).to(device)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules=targets))
    if "checkpoint" in sys.argv[5:]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    vocab = model.config.vocab_size
    ids = torch.tensor([[(b * 7919 + t * 104729) % vocab for t in range(seq)] for b in range(batch)], device=device)
    labels = ids.clone()
    labels[:, : seq // 4] = -100
    timed = 0.0
    for step in range(steps):
        t = time.perf_counter()
        # transformers' own loss (its chunking and shifting), as a Trainer would compute it.
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step > 0:
            timed += time.perf_counter() - t
    n = max(steps - 1, 1)
    print(json.dumps({"steps": n, "seconds_per_step": timed / n, "tokens_per_s": batch * seq * n / timed}))


main()
