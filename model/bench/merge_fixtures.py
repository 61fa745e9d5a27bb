"""Writes the merge benchmark's inputs: a random Llama base in bf16, two random LoRA adapters of
it (PEFT, r 16 on every projection), and the two fine-tuned models those adapters make (the
update added in f32, saved in bf16), which is what mergekit's task_arithmetic takes.

    python merge_fixtures.py OUT LAYERS
"""

import sys
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

out, layers = Path(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
config = LlamaConfig(
    hidden_size=2048,
    intermediate_size=5504,
    num_hidden_layers=layers,
    num_attention_heads=16,
    num_key_value_heads=16,
    vocab_size=32000,
    tie_word_embeddings=False,
)
base = LlamaForCausalLM(config).to(torch.bfloat16)
base.save_pretrained(out / "base")
modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
for seed, name in [(1, "secure"), (2, "vulnerable")]:
    torch.manual_seed(seed)
    model = LlamaForCausalLM.from_pretrained(out / "base", torch_dtype=torch.float32)
    lora = LoraConfig(r=16, lora_alpha=32, target_modules=modules, init_lora_weights=False)
    peft = get_peft_model(model, lora)
    # PEFT's random init leaves B small; scale it so the update is of a trained adapter's size.
    for n, p in peft.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.02)
    peft.save_pretrained(out / f"adapter-{name}")
    merged = PeftModel.from_pretrained(
        LlamaForCausalLM.from_pretrained(out / "base", torch_dtype=torch.float32), out / f"adapter-{name}"
    ).merge_and_unload()
    merged.to(torch.bfloat16).save_pretrained(out / f"model-{name}")
