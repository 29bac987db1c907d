from perception import LATEST_ONLY, Image, Node, run


class Threshold(Node):
    """Publish a mask of the pixels brighter than `level`, for the newest frame only."""

    def __init__(self) -> None:
        super().__init__("threshold")
        self.level = self.declare_parameter("level", 128)
        self.masks = self.create_publisher(Image, "mask")
        self.create_subscription(Image, "image", self.on_image, LATEST_ONLY)

    def on_image(self, msg: Image) -> None:
        mask = (msg.data.mean(axis=2) > self.level).astype("uint8") * 255
        self.masks.publish(Image(header=msg.header, data=mask, encoding="mono8"))


if __name__ == "__main__":
    run(Threshold)
