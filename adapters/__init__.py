"""Model adapters (camera, LiDAR, detection, streaming). Needs torch; built in later issues."""
