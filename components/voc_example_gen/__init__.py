"""ExampleGen for raw VOCdevkit folders: a Beam executor for TFX's FileBasedExampleGen.

Light (no TFX, TensorFlow or PIL import), so that configuration can read the default it shares
with the converter.
"""

# Images with more pixels than this are rejected from their header, before any decoding, unless
# the pipeline says otherwise (data.max_image_pixels). 50 megapixels is above any camera a dataset
# is usually shot with; a decoded RGB image is 150 MB, and a 13000x13000 JPEG 500 MB.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
