"""Registration: intensity-based, point-based (landmarks, ICP), longitudinal change, fusion views."""
