"""What the decoding step's matrix products cost on this CPU in each weight format libtorch
offers: f32 (secvec's CPU default), bf16, int8 weights with activations quantised per call
(fbgemm's dynamic quantisation, the closest libtorch has to llama.cpp's integer kernels), and
int8 weights with f32 activations (`_weight_int8pack_mm`, per-channel scales). Each row also
says whether a row's output is the same bits alone as in the batch (the batch invariance
secvec's sampling needs). Shapes are
Qwen2.5-Coder-0.5B's projections (hidden 896, MLP 4864, q 896, k/v 128, vocab 151936) at the
rows a decoding step multiplies. Run from the repo root after scripts/setup.sh:

    OMP_NUM_THREADS=2 .venv/bin/python model/bench/cpu_weight_formats.py [ROWS ...]
"""

import sys
import time

import torch

torch.manual_seed(0)
HIDDEN, MLP, KV, VOCAB, LAYERS = 896, 4864, 128, 151936, 24
# (in, out, per model): q, k, v, o, gate, up, down per layer; the head once.
SHAPES = [(HIDDEN, HIDDEN, LAYERS), (HIDDEN, KV, 2 * LAYERS), (HIDDEN, HIDDEN, LAYERS), (HIDDEN, MLP, 2 * LAYERS),
          (MLP, HIDDEN, LAYERS), (HIDDEN, VOCAB, 1)]


def best(f, repeats=5):
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


FORMATS = ("f32", "bf16", "int8 dynamic", "int8 weight-only")


def product(fmt, w):
    """`x -> x @ w.T` in format `fmt`."""
    if fmt == "f32":
        return lambda x: torch.nn.functional.linear(x, w)
    if fmt == "bf16":
        wb = w.bfloat16()
        return lambda x: torch.nn.functional.linear(x.bfloat16(), wb)
    if fmt == "int8 dynamic":
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        lin.weight.data = w
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        return q
    scales = w.abs().amax(1) / 127
    wq = torch.round(w / scales[:, None]).to(torch.int8)
    return lambda x: torch._weight_int8pack_mm(x, wq, scales)


def step(rows, fmt):
    """One decoding step's matrix products (every shape once, scaled by how often it occurs),
    and whether each row's output is the same alone as in the batch."""
    total, invariant = 0.0, True
    for fan_in, fan_out, count in SHAPES:
        f = product(fmt, torch.randn(fan_out, fan_in) * 0.02)
        x = torch.randn(rows, fan_in)
        total += best(lambda: f(x)) * count
        together = f(x)
        invariant &= all(torch.equal(f(x[i:i + 1])[0], together[i]) for i in range(rows))
    return total, invariant


def main():
    rows = [int(r) for r in sys.argv[1:]] or [1, 8, 16, 32]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"quantized engine {torch.backends.quantized.engine}")
    print("| rows | " + " | ".join(f"{f} (ms; rows alone = in batch)" for f in FORMATS) + " |")
    print("|---|" + "---|" * len(FORMATS))
    with torch.no_grad():
        for r in rows:
            cells = []
            for fmt in FORMATS:
                seconds, invariant = step(r, fmt)
                cells.append(f"{seconds * 1e3:.1f} ({'yes' if invariant else 'no'})")
            print(f"| {r} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
