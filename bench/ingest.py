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

import tensorflow as tf

from vocdet.components import voc_format
from vocdet.components.voc_example_gen import convert
from vocdet.pipeline import config as config_lib
from vocdet.pipeline.data.root import prepare_data_root
from vocdet.pipeline.local import runner as local_runner
from vocdet.pipeline.data import sample as sample_data

MULTI_PROCESS = {"beam": {"direct_running_mode": "multi_processing", "direct_num_workers": 2}}

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
        with tf.io.TFRecordWriter(os.path.join(work, "plain.tfrecord.gz"), options="GZIP") as writer:
            for image_id in convert.read_image_set(os.path.join(voc_dir, "ImageSets", "Main", "trainval.txt")) + (
                convert.read_image_set(os.path.join(voc_dir, "ImageSets", "Main", "test.txt"))
            ):
                writer.write(convert.convert_record(voc_dir, image_id, voc_format.VOC_CLASSES).example.SerializeToString())
        plain_rate = NUM_IMAGES / (time.perf_counter() - started)

        rates = {}
        for mode, config in (("in_memory", {}), ("multi_processing, 2 workers", MULTI_PROCESS)):
            started = time.perf_counter()
            out = os.path.join(work, f"out-{len(rates)}")
            # What `vocdet ingest --data WORK --output OUT` runs.
            run_config = config_lib.load(config_lib.LOCAL_PRESET, None, {**config, "output_dir": out, "data": {"data_dirs": [work]}})
            local_runner.ingest(*prepare_data_root(run_config))
            rates[mode] = NUM_IMAGES / (time.perf_counter() - started)

        print(f"ingest: reference, read the files (1 process):        {read_rate:8.0f} images/s ({total_bytes / 2**20:.0f} MiB)")
        print(f"ingest: convert + gzip TFRecord, no Beam (1 process): {plain_rate:8.0f} images/s")
        for mode, rate in rates.items():
            print(f"ingest: vocdet ingest, Beam DirectRunner {mode}: {rate:8.0f} images/s (TFX start-up included)")
        best = max(rates.values())
        print(f"ingest: ratio vocdet / reading = {best / read_rate:.4f}; vocdet / plain conversion = {best / plain_rate:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
