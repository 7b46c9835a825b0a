"""ExampleGen speed: VOCdevkit folder -> TFRecords, against reading the same files.

Generates a VOC-sized dataset (default 2,000 images of about 500x375) and
reports images/s for
  - reference: reading every listed image and annotation file in one process;
  - vocdet: the pipeline's own ExampleGen (Beam DirectRunner), through `vocdet ingest`.
The JPEGs are not decoded or re-encoded by the conversion, so the ratio shows
the cost of parsing, checking and writing on top of plain reading.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from pipeline import cli, sample_data

NUM_IMAGES = int(os.environ.get("BENCH_INGEST_IMAGES", "2000"))


def main() -> None:
    work = tempfile.mkdtemp(prefix="bench-ingest-")
    try:
        spec = sample_data.SampleSpec(num_images=NUM_IMAGES, seed=1, min_size=375, max_size=500)
        started = time.perf_counter()
        voc_dir = sample_data.make_sample(work, spec)
        print(f"ingest: generated {NUM_IMAGES} images in {time.perf_counter() - started:.0f}s")

        started = time.perf_counter()
        total_bytes = 0
        for sub in ("Annotations", "JPEGImages"):
            for name in os.listdir(os.path.join(voc_dir, sub)):
                with open(os.path.join(voc_dir, sub, name), "rb") as handle:
                    total_bytes += len(handle.read())
        read_rate = NUM_IMAGES / (time.perf_counter() - started)

        started = time.perf_counter()
        assert cli.main(["ingest", "--data", work, "--output", os.path.join(work, "out")]) == 0
        ingest_rate = NUM_IMAGES / (time.perf_counter() - started)

        print(f"ingest: reference (read files, 1 process): {read_rate:8.0f} images/s ({total_bytes / 2**20:.0f} MiB)")
        print(f"ingest: vocdet ExampleGen (Beam DirectRunner): {ingest_rate:8.0f} images/s")
        print(f"ingest: ratio vocdet / reference = {ingest_rate / read_rate:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
