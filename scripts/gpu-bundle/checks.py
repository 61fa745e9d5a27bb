"""The verdicts of the GPU bundle's run.sh, each printed as one line: ok|FAILED<TAB>detail.

    checks.py logits SECVEC.json TRANSFORMERS.json DTYPE
    checks.py training COMPARISON.json TOLERANCE
    checks.py samples SAMPLES.jsonl
    checks.py throughput SECVEC.json TRANSFORMERS.json NEW_TOKENS
    checks.py latency RESULTS.json DEVICE
    checks.py table RESULTS.tsv
"""
import json
import math
import sys


def logits(ours, theirs, dtype):
    # f32: both stacks compute the same thing, up to the order of reductions. bf16 keeps 8 bits
    # of mantissa, so 5% of the largest |logit| and the same argmax.
    a, b = json.load(open(ours))["logits"], json.load(open(theirs))["logits"]
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in a + b):
        return False, "a logit is not a finite number"
    diff = max(abs(x - y) for x, y in zip(a, b))
    top = max(abs(y) for y in b)
    same = a.index(max(a)) == b.index(max(b))
    ok = len(a) == len(b) and same and (diff <= 1e-3 if dtype == "f32" else diff <= 0.05 * top)
    return ok, f"max |diff| {diff:.2e} (largest |logit| {top:.2f}), same argmax: {same}"


def training(path, tolerance):
    c = json.load(open(path))
    numbers = [c["loss_difference"], c["adapter_difference"], *c["losses"], *c["reference_losses"]]
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in numbers):
        return False, f"not a finite number among the losses and differences: {c}"
    ok = c["loss_difference"] <= float(tolerance) and c["adapter_difference"] <= float(tolerance)
    return ok, (f"{len(c['losses'])} step(s), losses {c['losses'][0]:.6f} .. {c['losses'][-1]:.6f}; "
                f"relative difference: losses {c['loss_difference']:.1e}, adapter {c['adapter_difference']:.1e} "
                f"(tolerance {tolerance})")


def samples(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    tokens = sum((r.get("generation") or {}).get("completion_tokens", 0) for r in rows)
    return bool(rows) and tokens > 0, f"{len(rows)} completions, {tokens} new tokens"


def throughput(ours, theirs, tokens):
    a, b = json.load(open(ours)), json.load(open(theirs))
    ok = a["new_tokens"] == b["new_tokens"] == int(tokens)
    return ok, f"secvec {a['tokens_per_s']:.0f} tok/s, transformers {b['tokens_per_s']:.0f} tok/s ({a['new_tokens']} and {b['new_tokens']} tokens)"


def latency(path, device):
    r = json.load(open(path))["rows"][0]
    return r["mean_ms"] > 0 and str(r.get("device", "")).startswith(device), f"{r['mean_ms']:.2f} ± {r['std_ms']:.2f} ms on {r.get('device')}, {r.get('dtype')}"


def table(path):
    print("| check | verdict | result |")
    print("|---|---|---|")
    # A row whose check printed nothing still shows, with an empty verdict (which fails the run).
    rows = [(line.rstrip("\n").split("\t", 2) + ["", ""])[:3] for line in open(path) if line.strip()]
    # In the order of the checks' numbers, whatever order they ran in.
    for name, verdict, detail in sorted(rows, key=lambda r: int(r[0].split(".")[0])):
        print(f"| {name} | {verdict} | {detail} |")


def main():
    what, args = sys.argv[1], sys.argv[2:]
    if what == "table":
        return table(*args)
    try:
        ok, detail = {"logits": logits, "training": training, "samples": samples,
                      "throughput": throughput, "latency": latency}[what](*args)
    # Whatever goes wrong reading a result is that check's failure, never a missing verdict.
    except Exception as e:
        ok, detail = False, f"no result: {type(e).__name__}: {e}"
    print(f"{'ok' if ok else 'FAILED'}\t{detail}")


main()
