"""ExampleGen for raw VOCdevkit folders: a Beam executor for TFX's FileBasedExampleGen.

Light (no TFX, TensorFlow or PIL import), so that configuration can read the default it shares
with the converter.
"""

# Images with more pixels than this are rejected from their header, before any decoding, unless
# the pipeline says otherwise (data.max_image_pixels). 50 megapixels is above any camera a dataset
# is usually shot with; a decoded RGB image is 150 MB, and a 13000x13000 JPEG 500 MB.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

# Annotations are read only up to this many bytes, checked from the file's size before reading
# (data.max_annotation_bytes). A VOC annotation is about 1 kB (some 300 bytes an object); CVAT's,
# with attributes, about 1 kB an object. 10 MB holds the object limit below in either form (1.5 MB
# and 5 MB), and bounds what parsing one annotation can take (ElementTree needs about 16 times the file).
DEFAULT_MAX_ANNOTATION_BYTES = 10_000_000
# Annotations with more `<object>`s than this are rejected, counted as they are parsed and before
# the rest is built (data.max_objects_per_image). Dense datasets stay well below: SKU-110K (retail
# shelves) has about 150 objects an image and some 700 at most; aerial and crowd images can hold a
# thousand or more.
DEFAULT_MAX_OBJECTS_PER_IMAGE = 5_000
# The folder of links a run's data root is (`<output>/data-root`, built by the pipeline from the
# --data folders): the converter follows its links once to name each record by the user's own file.
DATA_ROOT_DIR = "data-root"
