"""The detector's thresholds, written once: the detector core, its node's parameters, the benchmarks
and the grasp planner's score threshold take their defaults from here. A light module (no onnxruntime),
so the command line can show them in its help at no cost. Ultralytics' predict uses the same values.
"""

DEFAULT_CONFIDENCE = 0.25  # least score a detection needs to be reported
DEFAULT_IOU = 0.45  # boxes of one class overlapping more than this are one object (NMS)
DEFAULT_MAX_DETECTIONS = 300  # per image
# Boxes of different classes overlapping more than this are one object reported twice (a mug also seen as
# a cylinder): the best-scoring class is kept and the others demoted as Soft-NMS demotes, to under
# DEFAULT_CONFIDENCE at most (decoders.py), which drops them below the confidence on one box and keeps a
# real object that a box of another class only half covers. 0.5 is where COCO and TIDE count two boxes as
# one object; Ultralytics' agnostic_nms deletes at the NMS IoU (0.45). 1.0 keeps the per-class behaviour.
DEFAULT_CROSS_CLASS_IOU = 0.5


def small_object_zoom_fits(zoom: float) -> bool:
    """A small-object pass's zoom: 0 (no second pass) or above 1 (the frame scaled up). A zoom under 1
    ran the pass on the frame scaled down, where small objects vanish, and it still answered for them."""
    return zoom == 0 or 1 < zoom < float("inf")
