"""Generate golden.json: ModelOpt's export formulas (modelopt/torch/export
quant_utils.py and qtensor/nvfp4_tensor.py at a2fbac7b, transcribed below
line for line) executed by torch 2.11 on CUDA and on CPU.

Run on a machine with torch and a GPU:  python3 torch_golden.py OUT.json
The Go tests in ptqcore/export compare their bytes with these.
"""
import json
import sys

import torch

E2M1_BOUNDS = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5])


def hexbytes(t):
    return t.contiguous().cpu().view(torch.uint8).numpy().tobytes().hex()


def f32bits(x):
    return hexbytes(torch.tensor([float(x)], dtype=torch.float32) if not torch.is_tensor(x) else x.float().reshape(1))


def fp8_weight(w, amax):
    # _export_quantized_weight FP8 branch: torch.tensor(amax.item() / maxbound)
    ws = torch.tensor(amax.float().item() / 448.0)
    # to_quantized_weight: scale moved to the weight's device, then w / scale
    ws_dev = ws.to(w.device)
    q = (w / ws_dev).to(torch.float8_e4m3fn)
    return q, ws


def cast_fp4(weight):
    sign_bit = (weight < 0).to(torch.uint8)
    weight_abs = weight.abs_()
    bounds = E2M1_BOUNDS.to(weight.device)
    ord_ = torch.searchsorted(bounds, weight_abs, out_int32=True).to(torch.uint8)
    odd = bounds[[1, 3, 5]]
    eq = torch.any(weight_abs.unsqueeze(-1) == odd, dim=-1).to(torch.uint8)
    return (sign_bit << 3) + ord_ + eq


def nvfp4_weight(w, amax, block=16):
    wsf2 = amax.float() / (6.0 * 448.0)
    k = w.shape[-1]
    if k % block:
        w = torch.nn.functional.pad(w, (0, block - k % block))
    n, kp = w.shape
    per_block_amax = w.view(n, kp // block, block).abs().amax(dim=-1).float()
    s = per_block_amax / (6.0 * wsf2.to(per_block_amax.device))
    s[s == 0] = 1.0
    s = s.clamp_(min=2**-9, max=448.0).to(torch.float8_e4m3fn)
    x = w.view(n, kp // block, block)
    scaled = x / ((s.to(torch.float32) * wsf2.to(w.device)).unsqueeze(-1))
    scaled = scaled.view(n, kp)
    q = cast_fp4(scaled)
    packed = (q[..., 1::2] << 4) | q[..., 0::2]
    return packed, s, wsf2


def main(out):
    g = torch.Generator().manual_seed(1234)
    res = {"torch": torch.__version__, "fp8": [], "nvfp4": [], "scales": []}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dtype_name, dtype in [("BF16", torch.bfloat16), ("F16", torch.float16), ("F32", torch.float32)]:
        w = (torch.randn(16, 64, generator=g) * 0.05).to(dtype)
        w[0, :8] = torch.tensor([0.0, -0.0, 1e-8, -1e-8, 0.0123, -0.0456, 0.07, -0.07]).to(dtype)
        amax = w.abs().amax()
        case = {"dtype": dtype_name, "shape": list(w.shape), "w": hexbytes(w), "amax": f32bits(amax)}
        for dev in devices:
            q, ws = fp8_weight(w.to(dev), amax.to(dev))
            case["q_" + dev] = hexbytes(q)
            case["scale"] = f32bits(ws)
        res["fp8"].append(case)
    for dtype_name, dtype, shape in [("BF16", torch.bfloat16, (16, 64)), ("F32", torch.float32, (8, 48)), ("BF16", torch.bfloat16, (4, 40))]:
        w = (torch.randn(*shape, generator=g) * 0.05).to(dtype)
        w[1, :16] = 0  # an all-zero block
        w[2, :16] = torch.tensor([1e-6] * 16).to(dtype)  # a tiny block
        amax = w.abs().amax()
        case = {"dtype": dtype_name, "shape": list(shape), "w": hexbytes(w), "amax": f32bits(amax)}
        for dev in devices:
            packed, s, wsf2 = nvfp4_weight(w.to(dev), amax.to(dev))
            case["packed_" + dev] = hexbytes(packed)
            case["block_scale_" + dev] = hexbytes(s)
            case["scale_2_" + dev] = f32bits(wsf2)
        res["nvfp4"].append(case)
    # weight_scale_2, input and KV scales: amax.float() / 448 and / (6 * 448)
    # with a Python divisor, per device (CUDA multiplies by the float32
    # reciprocal of a CPU scalar divisor).
    amaxes = [0.001, 1.0, 3.140625, 17.5, 448.0, 2688.0, 123456.0] + [float(x) for x in (torch.rand(200, generator=g) * 10).bfloat16().float()]
    for a in amaxes:
        t = torch.tensor(a, dtype=torch.bfloat16).float()
        entry = {"amax": f32bits(t)}
        for dev in devices:
            td = t.to(dev)
            entry["fp8_" + dev] = f32bits(td / 448.0)
            entry["nvfp4_" + dev] = f32bits(td / (6.0 * 448.0))
        res["scales"].append(entry)
    # Semantics probe: is the f32 0-d scale rounded to the weight dtype?
    probe = {}
    w = (torch.randn(4096, generator=g) * 0.05).to(torch.bfloat16)
    s = torch.tensor(0.0001234567, dtype=torch.float32)
    for dev in devices:
        wd, sd = w.to(dev), s.to(dev)
        got = (wd / sd).float().cpu()
        a = (w.float() / s).to(torch.bfloat16).float()
        b = (w.float() / s.to(torch.bfloat16).float()).to(torch.bfloat16).float()
        probe[dev] = {"eq_f32_scale": int((got == a).sum()), "eq_bf16_scale": int((got == b).sum()), "n": w.numel()}
        # cpu scalar on a cuda tensor
        if dev == "cuda":
            got2 = (wd / s).float().cpu()
            probe["cuda_cpu_scalar"] = {"eq_f32_scale": int((got2 == a).sum()), "eq_bf16_scale": int((got2 == b).sum())}
    res["probe"] = probe
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(probe))


if __name__ == "__main__":
    main(sys.argv[1])
