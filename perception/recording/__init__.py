"""Recording and replay: MCAP files of our wire messages (mcap_file) with Foxglove views beside them
(foxglove), and the live Foxglove link that sends the same views as the graph runs (live). A tool: the
runtime never imports it."""

# The choices `percept record` offers, here so the command line can list them without loading mcap or
# OpenCV; mcap_file.py and images.py hold what each means.
COMPRESSIONS = ("zstd", "lz4", "none")  # MCAP chunk compression; zstd as rosbag2 uses by default
IMAGE_FORMATS = ("raw", "png", "jpeg")  # raw and png are lossless, jpeg is not

# The one WebSocket subprotocol foxglove-sdk's server accepts (its websocket/handshake.rs; no setting
# changes it), here so `percept foxglove --help` names it without loading the SDK. The Foxglove app
# offers it; Lichtblick, older Foxglove Studio releases and @foxglove/ws-protocol clients offer only the
# protocol's first name, OLD_SUBPROTOCOL, and are refused at the handshake.
SDK_SUBPROTOCOL = "foxglove.sdk.v1"
OLD_SUBPROTOCOL = "foxglove.websocket.v1"
