#!/usr/bin/env python3
"""PyTorch side of the CLIP speed benchmark (`benches/run_clip.sh`).

`make` writes a full-size ViT-B/32 image tower with random weights (the
`openai/clip-vit-base-patch32` vision config, which is transformers' default)
in the Hugging Face layout, so embedscope and PyTorch time the same model
without downloading real weights (speed does not depend on the values).

`time` runs transformers' CLIPVisionModelWithProjection on CPU, in float32,
under torch.inference_mode, on random pixel_values, and prints images/s per
batch size as JSON lines. Threads: torch.set_num_threads(--threads).
"""
import argparse
import json
import sys
import time


def make(out):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(projection_dim=512)  # ViT-B/32 widths, 12 layers
    model = CLIPVisionModelWithProjection(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    print(f"wrote {out}", file=sys.stderr)


def bench(model_dir, batches, threads, seconds):
    import torch
    from transformers import CLIPVisionModelWithProjection

    torch.set_num_threads(threads)
    model = CLIPVisionModelWithProjection.from_pretrained(model_dir, dtype=torch.float32).eval()
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224)
        with torch.inference_mode():
            model(pixel_values=x)  # warm-up
            runs, images, start = 0, 0, time.perf_counter()
            while runs < 2 or time.perf_counter() - start < seconds:
                model(pixel_values=x)
                runs += 1
                images += batch
            elapsed = time.perf_counter() - start
        print(json.dumps({
            "tool": f"pytorch {torch.__version__} (transformers CLIPVisionModelWithProjection)",
            "batch": batch, "threads": threads, "images": images,
            "seconds": round(elapsed, 3), "images_per_s": round(images / elapsed, 2),
        }), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    t = sub.add_parser("time")
    t.add_argument("model_dir")
    t.add_argument("--batch", default="1,8,32")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seconds", type=float, default=10.0)
    a = parser.parse_args()
    if a.cmd == "make":
        make(a.out)
    else:
        bench(a.model_dir, [int(b) for b in a.batch.split(",")], a.threads, a.seconds)
