"""The detector's thresholds, written once: the detector core, its node's parameters, the benchmarks
and the grasp planner's score threshold take their defaults from here. A light module (no onnxruntime),
so the command line can show them in its help at no cost. Ultralytics' predict uses the same values.
"""

DEFAULT_CONFIDENCE = 0.25  # least score a detection needs to be reported
DEFAULT_IOU = 0.45  # boxes of one class overlapping more than this are one object (NMS)
DEFAULT_MAX_DETECTIONS = 300  # per image
