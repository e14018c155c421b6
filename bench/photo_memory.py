"""What processing one photo upload costs: its time and its peak memory, before and after the pixel budgets.

For each generated image, a fresh Python process imports services/intake/photos.py, reads the file,
resets its peak resident set size to the present one (the baseline: `/proc/self/clear_refs`), runs
`clean_photo` once and reports the wall time and how far the peak (VmHWM) rose above the baseline:
the memory one upload costs the web process that handles it, Pillow's and libjpeg's C allocations
included (tracemalloc sees Python's only). Linux only. "before" is the same with photos.py as it was
at --before (by default the commit before the budgets and downscaling: full-size decoding, one limit
of 50 MP); "after" is the working tree's.

The images: a small JPEG; phone-like JPEGs of 12 MP and 48 MP (a gradient with noise, 4:2:0, like a
camera's); the JPEG decoded whole at its largest (5119x3839: one pixel short of being drafted at 1/2
scale); a JPEG just under its 64 MP budget; a CMYK 4:4:4 progressive JPEG at its budget, the most
coefficients libjpeg keeps per pixel; 24 MP PNGs in RGB and RGBA at their budget (graphic-like: a
24 MP photo would not fit 10 MiB as PNG); 12 MP WebPs (a phone photo's 4032x3024) with and without
alpha; and issue 7's 7000x7000 near-blank PNG. It prints a table and asserts nothing.

    python -m bench.photo_memory [--before 34be58c] [--repeat 3]
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from PIL import Image, ImageDraw

# Not bench.harness's: a measuring process imports nothing it does not need before its baseline.
ROOT = Path(__file__).resolve().parent.parent
BEFORE = "34be58c"  # "Give the README the measured figures of the embedded database": photos.py before budgets
PHOTOS = "services/intake/photos.py"


@dataclass(frozen=True)
class Sample:
    name: str
    filename: str
    make: Callable[[], bytes]


def phone_like(size: tuple[int, int]) -> Image.Image:
    """Smooth gradients with sensor-like noise: encodes to about a photo's bytes per pixel."""
    gradients = Image.merge("RGB", [Image.linear_gradient("L").resize(size),
                                    Image.linear_gradient("L").rotate(90).resize(size),
                                    Image.radial_gradient("L").resize(size)])
    return Image.blend(gradients, Image.effect_noise(size, 24).convert("RGB"), 0.15)


def graphic_like(size: tuple[int, int]) -> Image.Image:
    """Gradients under flat blocks, as a scan or a drawing: what a large PNG under 10 MiB looks like."""
    blocks = Image.effect_noise((size[0] // 16, size[1] // 16), 40).resize(size, Image.Resampling.NEAREST)
    gradients = Image.merge("RGB", [Image.linear_gradient("L").resize(size),
                                    Image.linear_gradient("L").rotate(90).resize(size),
                                    Image.radial_gradient("L").resize(size)])
    return Image.blend(gradients, blocks.convert("RGB"), 0.3)


def near_blank(size: tuple[int, int]) -> Image.Image:
    """Issue 7's upload: white, a few marks, a few hundred KB as PNG."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for i in range(0, min(size), 500):
        draw.line((i, 0, size[0] - i, size[1]), fill="black", width=3)
    return image


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def with_alpha(image: Image.Image) -> Image.Image:
    image.putalpha(200)
    return image


SAMPLES = [
    Sample("JPEG 64x48", "small.jpg", lambda: encoded(Image.new("RGB", (64, 48), "green"), "JPEG")),
    Sample("JPEG 12 MP phone 4000x3000", "phone-12mp.jpg",
           lambda: encoded(phone_like((4000, 3000)), "JPEG", quality=90)),
    Sample("JPEG 48 MP phone 8000x6000", "phone-48mp.jpg",
           lambda: encoded(phone_like((8000, 6000)), "JPEG", quality=90)),
    Sample("JPEG 5119x3839 (no draft)", "whole.jpg",
           lambda: encoded(phone_like((5119, 3839)), "JPEG", quality=90)),
    Sample("JPEG 64 MP 9216x6912", "budget-64mp.jpg",
           lambda: encoded(phone_like((9216, 6912)), "JPEG", quality=85)),
    Sample("prog. JPEG CMYK 24 MP", "progressive-cmyk-24mp.jpg",
           lambda: encoded(phone_like((6000, 4000)).convert("CMYK"), "JPEG", quality=85, progressive=True,
                           subsampling=0)),
    Sample("PNG 24 MP 6000x4000", "graphic-24mp.png", lambda: encoded(graphic_like((6000, 4000)), "PNG")),
    Sample("PNG RGBA 24 MP", "graphic-rgba-24mp.png",
           lambda: encoded(with_alpha(graphic_like((6000, 4000))), "PNG")),
    Sample("WebP 12 MP 4032x3024", "phone-12mp.webp",
           lambda: encoded(phone_like((4032, 3024)), "WEBP", quality=80, method=0)),
    Sample("WebP RGBA 12 MP", "phone-rgba-12mp.webp",
           lambda: encoded(with_alpha(phone_like((4032, 3024))), "WEBP", quality=80, method=0)),
    Sample("PNG 7000x7000 near-blank", "issue-7.png", lambda: encoded(near_blank((7000, 7000)), "PNG")),
]


# --- one measurement, in a process of its own --------------------------------------------------

def memory_mb(field: str) -> float:
    """VmRSS (resident now) or VmHWM (the peak), from /proc: both count C allocations too."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    raise LookupError(field)


def reset_peak() -> float:
    """Make the peak the resident set size now, and return it.

    getrusage's ru_maxrss would not do: Linux carries it across fork and exec, so a child starts with
    its parent's peak (here, that of the process which generated the 48 MP images).
    """
    Path("/proc/self/clear_refs").write_text("5")
    return memory_mb("VmRSS")


def load_photos(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("photos_measured", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def measure_once(photos_path: str, image_path: str) -> dict:
    photos = load_photos(photos_path)
    raw = Path(image_path).read_bytes()
    baseline = reset_peak()
    started = time.perf_counter()
    try:
        photo = photos.clean_photo(raw)
        outcome = f"{photo.width}x{photo.height}, {photo.size / 1e6:.2f} MB"
    except photos.TooLarge as refused:
        outcome = f"413: {refused.detail}"
    return {"seconds": time.perf_counter() - started, "peak_mb": memory_mb("VmHWM") - baseline, "outcome": outcome}


# --- the table ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Figures:
    seconds: float
    peak_mb: float
    outcome: str


def measured(photos_path: Path, image_path: Path, repeat: int) -> Figures:
    """Median time, highest peak and the outcome over `repeat` fresh processes."""
    runs = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-m", "bench.photo_memory", "--measure", str(photos_path),
                               str(image_path)], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"measuring {image_path.name} with {photos_path} failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout))
    return Figures(statistics.median(r["seconds"] for r in runs), max(r["peak_mb"] for r in runs),
                   runs[0]["outcome"])


def photos_at(ref: str, directory: Path) -> Path | None:
    done = subprocess.run(["git", "show", f"{ref}:{PHOTOS}"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    path = directory / "photos_before.py"
    path.write_text(done.stdout)
    return path


def cell(figures: Figures | None) -> str:
    if figures is None:
        return f"{'-':>7} {'-':>8}"
    return f"{figures.seconds:>7.2f} {figures.peak_mb:>8.0f}"


def run(before_ref: str, repeat: int) -> None:
    python = os.path.relpath(sys.executable, ROOT)
    print("reproduce: " + f"cd {shlex.quote(str(ROOT))} && " + shlex.join(
        [python, "-m", "bench.photo_memory", "--before", before_ref, "--repeat", str(repeat)]))
    print(f"machine: nproc={len(os.sched_getaffinity(0))}, Python {sys.version.split()[0]}, "
          f"Pillow {Image.__version__}; median time and highest peak of {repeat} fresh process(es) each")
    with tempfile.TemporaryDirectory(prefix="woodpecker-bench-photos-") as name:
        directory = Path(name)
        before = photos_at(before_ref, directory)
        if before is None:
            print(f"before: {PHOTOS} at {before_ref} not found; only after is measured")
        after = ROOT / PHOTOS
        print(f"\n{'':27} {'file':>9} | {'before':^16} | {'after':^16} |")
        print(f"{'image':27} {'MB':>9} | {'s':>7} {'peak MB':>8} | {'s':>7} {'peak MB':>8} | after: stored or refused")
        for sample in SAMPLES:
            image_path = directory / sample.filename
            image_path.write_bytes(sample.make())
            old = measured(before, image_path, repeat) if before else None
            new = measured(after, image_path, repeat)
            print(f"{sample.name:27} {image_path.stat().st_size / 1e6:>9.2f} | {cell(old)} | {cell(new)} | "
                  f"{new.outcome}", flush=True)
            if old and old.outcome.startswith("413") != new.outcome.startswith("413"):
                print(f"{'':27} {'':>9}   before: {old.outcome}")
            image_path.unlink()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default=BEFORE, help=f"the git revision of {PHOTOS} measured as before")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per image and version")
    parser.add_argument("--measure", nargs=2, metavar=("PHOTOS_PY", "IMAGE"), help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.measure:
        print(json.dumps(measure_once(*args.measure)))
    else:
        run(args.before, args.repeat)


if __name__ == "__main__":
    main()
