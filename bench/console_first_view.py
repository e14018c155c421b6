"""What the console's first view costs a browser: the JavaScript and CSS (gzip-compressed, as served over a
compressing proxy) of the page every route loads, and of each landing screen on top of it (the office lands
on /triage, a department and a grid leader on /cases); every other screen loads when it is opened.

Reads clients/console/dist (build it first: `make up`, or `cd clients/console && npm run build`) and Vite's
manifest of which chunks import which. The issue's target is at most 350 KB for the first view.
It prints figures and asserts nothing.

    .venv/bin/python -m bench.console_first_view
"""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

DIST = Path(__file__).resolve().parent.parent / "clients" / "console" / "dist"
SCREENS = {"/triage (office)": "src/views/TriageView.vue",
           "/cases (department, grid leader)": "src/views/CasesView.vue",
           "/cases/{id}": "src/views/CaseView.vue"}


def loaded(manifest: dict, key: str, seen: set[str] | None = None) -> set[str]:
    """The files a chunk brings with it: itself, its CSS, and what it imports statically, all the way down."""
    seen = set() if seen is None else seen
    chunk = manifest[key]
    files = {chunk["file"], *chunk.get("css", [])}
    for imported in chunk.get("imports", []):
        if imported not in seen:
            seen.add(imported)
            files |= loaded(manifest, imported, seen)
    return files


def gzipped(files: set[str]) -> int:
    return sum(len(gzip.compress((DIST / name).read_bytes(), compresslevel=9)) for name in files)


def main() -> None:
    manifest_file = DIST / ".vite" / "manifest.json"
    if not manifest_file.exists():
        sys.exit(f"No build at {DIST}: run `make up`, or `npm run build` in clients/console.")
    manifest = json.loads(manifest_file.read_text())
    entry = next(key for key, chunk in manifest.items() if chunk.get("isEntry"))
    page = loaded(manifest, entry)
    print(f"every route's page: {len(page)} files, {gzipped(page) / 1024:.1f} KiB gzip")
    for screen, source in SCREENS.items():
        first_view = page | loaded(manifest, source)
        print(f"first view at {screen}: {len(first_view)} files, {gzipped(first_view) / 1024:.1f} KiB gzip "
              f"(the screen adds {gzipped(first_view - page) / 1024:.1f} KiB)")
    everything = {p.relative_to(DIST).as_posix() for p in (DIST / "assets").iterdir() if p.suffix in (".js", ".css")}
    print(f"all the console's JS and CSS: {len(everything)} files, {gzipped(everything) / 1024:.1f} KiB gzip")


if __name__ == "__main__":
    main()
