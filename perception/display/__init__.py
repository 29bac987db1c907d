"""Drawing on arrays alone, shared by every display: the colours (palette) and the overlays of
detections, tracks and grasps on a frame (overlay). The viewer and the Foxglove views both use it."""
