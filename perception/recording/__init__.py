"""Recording and replay: MCAP files of our wire messages (mcap_file) with Foxglove views beside them
(foxglove), and the live Foxglove link that sends the same views as the graph runs (live). A tool: the
runtime never imports it."""

# The choices `percept record` offers, here so the command line can list them without loading mcap or
# OpenCV; mcap_file.py and images.py hold what each means.
COMPRESSIONS = ("zstd", "lz4", "none")  # MCAP chunk compression; zstd as rosbag2 uses by default
IMAGE_FORMATS = ("raw", "png", "jpeg")  # raw and png are lossless, jpeg is not
