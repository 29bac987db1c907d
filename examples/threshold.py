from perception import LATEST_ONLY, Image, Node, run


class Threshold(Node):
    """Publish a mask of the pixels brighter than `level`, for the newest frame only."""

    def __init__(self) -> None:
        super().__init__("threshold")
        self.declare_parameter("level", 128, "brightness a pixel must pass (0-255)", range=(0, 255))
        self.masks = self.create_publisher(Image, "mask")
        self.create_subscription(Image, "image", self.on_image, LATEST_ONLY)

    def on_image(self, msg: Image) -> None:
        level = self.get_parameter("level")  # read per frame: `percept param set` changes it live
        mask = (msg.data.mean(axis=2) > level).astype("uint8") * 255
        self.masks.publish(Image(header=msg.header, data=mask, encoding="mono8"))


if __name__ == "__main__":
    run(Threshold)
