"""The PEFT + transformers side of model/tests/training.rs: LoRA training steps on given sequences.

    python training_reference.py SPEC.json OUT_DIR

SPEC holds the base model folder, the initial adapter folder, the sequences (token ids and
per-position weights), which sequences form each micro-batch of each optimiser step, the
objective and the hyperparameters.
- "sft": the loss of a step is the weighted NLL of its target tokens summed over its
  micro-batches and divided by the step's number of target tokens (transformers' gradient
  accumulation).
- "lpo": micro-batches list sequences as (secure, vulnerable) pairs, and "changed" gives each
  sequence's per-position mask m. The loss is SecVecCoder's Eq. 12 for the secure adapter, written
  out here: s = sum(m log p) / |c|, margin = beta (s+ - s-), loss = -log sigmoid(margin - gamma)
  - epsilon sum((1 - m+) log p+) / |c+|, averaged over the step's pairs.
"device" (default "cpu") is where both run.
Prints {"losses": [...]} and saves the final adapter to OUT_DIR.
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup


def lpo_loss(spec, logp, weights, micro, seqs, t):
    changed = torch.zeros(len(micro), t - 1, device=logp.device)
    for row, i in enumerate(micro):
        n = len(seqs[i]["changed"])
        changed[row, : n - 1] = torch.tensor(seqs[i]["changed"][1:n])
    length = weights.sum(-1)
    score = (changed * logp * weights).sum(-1) / length
    unchanged = ((1 - changed) * logp * weights).sum(-1) / length
    total = 0.0
    for k in range(0, len(micro), 2):
        margin = spec["beta"] * (score[k] - score[k + 1]) - spec["gamma"]
        total = total - torch.nn.functional.logsigmoid(margin) - spec["epsilon"] * unchanged[k]
    return total


def main():
    spec = json.load(open(sys.argv[1]))
    out_dir = sys.argv[2]
    torch.manual_seed(0)
    device = spec.get("device", "cpu")
    base = AutoModelForCausalLM.from_pretrained(spec["base"], dtype=torch.float32).to(device)
    model = PeftModel.from_pretrained(base, spec["adapter"], is_trainable=True).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=spec["weight_decay"], betas=(0.9, 0.999), eps=1e-8)
    total, warmup = len(spec["steps"]), spec["warmup"]
    make = {"linear": get_linear_schedule_with_warmup, "cosine": get_cosine_schedule_with_warmup}[spec["schedule"]]
    sched = make(opt, warmup, total)
    seqs = spec["sequences"]
    losses = []
    for step in spec["steps"]:
        n_tokens = sum(sum(1 for w in seqs[i]["weights"][1:] if w != 0) for micro in step for i in micro)
        step_loss = 0.0
        for micro in step:
            t = max(len(seqs[i]["ids"]) for i in micro)
            ids = torch.zeros(len(micro), t, dtype=torch.long)
            mask = torch.zeros(len(micro), t, dtype=torch.long)
            weights = torch.zeros(len(micro), t)
            for row, i in enumerate(micro):
                n = len(seqs[i]["ids"])
                ids[row, :n] = torch.tensor(seqs[i]["ids"])
                mask[row, :n] = 1
                weights[row, 1:n] = torch.tensor(seqs[i]["weights"][1:n])
            ids, mask, weights = ids.to(device), mask.to(device), weights.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            if spec.get("objective", "sft") == "sft":
                loss = -(logp * weights[:, 1:]).sum() / n_tokens
            else:
                loss = lpo_loss(spec, logp, weights[:, 1:], micro, seqs, t) / (sum(len(m) for m in step) / 2)
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(params, spec["max_grad_norm"])
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(step_loss)
    model.save_pretrained(out_dir)
    print(json.dumps({"losses": losses}))


main()
