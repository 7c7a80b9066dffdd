"""Speed of the presets: parameters, encode time, one training step, reconstruction.

For each preset: parameters of each component; encode time for a batch of 32; one training step
(forward + backward of the diffusion loss through encoder and UNet, batch 32); reconstruction of
8 images at 20 and 50 DDIM steps. Each time is the median of repeated runs after a warm-up.

    python benchmarks/pipeline_speed.py                      # cpu and shapes3d presets
    python benchmarks/pipeline_speed.py --presets tiny --repeats 3 --device cuda
"""

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from concept_diffusion import build_pipeline


def median_seconds(fn, repeats, device):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(preset, repeats, device):
    pipe = build_pipeline(preset).to(device)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.concept_encoder.config.sample_size
    batch = torch.rand(32, 3, size, size, device=device) * 2 - 1
    row = {"preset": preset}
    for name in ("concept_encoder", "unet", "vae"):
        module = getattr(pipe, name)
        row[f"params_{name}"] = sum(p.numel() for p in module.parameters()) if module is not None else 0

    def encode():
        with torch.no_grad():
            pipe.concept_encoder(batch)

    row["encode_32_s"] = median_seconds(encode, repeats, device)

    encoder, unet = pipe.concept_encoder.train(), pipe.unet.train()
    params = list(encoder.parameters()) + list(unet.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    with torch.no_grad():  # the first stage is frozen in stage 2: encode once, outside the timed step
        latents = pipe.vae.encode(batch).latents if pipe.vae is not None else batch
    alphas = pipe.scheduler.alphas_cumprod.to(device)

    def train_step():
        t = torch.randint(0, len(alphas), (batch.shape[0],), device=device)
        noise = torch.randn_like(latents)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        tokens = encoder(batch).tokens
        loss = F.l1_loss(unet(noisy, t, encoder_hidden_states=tokens).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    row["train_step_32_s"] = median_seconds(train_step, repeats, device)
    encoder.eval(), unet.eval()
    for steps in (20, 50):
        row[f"reconstruct_8_{steps}_steps_s"] = median_seconds(
            # The pipeline takes images in [0, 1] (diffusers' convention); batch is in model space.
            lambda: pipe(images=(batch[:8] + 1) / 2, num_inference_steps=steps, output_type="pt"), repeats, device
        )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="cpu,shapes3d")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/pipeline_speed.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    rows = [measure(preset, args.repeats, device) for preset in args.presets.split(",")]
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(f"{row[c]:.4f}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    result = {"device": device_name, "torch": torch.__version__, "repeats": args.repeats, "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as file:
        json.dump(result, file, indent=2)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
