"""Image registration: transforms, warping, intensity-based registration.

Convention everywhere: a :class:`Transform` maps fixed-image points (LPS, mm) to moving-image
points, as ITK does; warping the moving image onto the fixed grid reads ``moving(T(x))``.
See ``docs/registration.md``.
"""

from medimg.core.resample import INTERPOLATORS, resample_image, resample_like, warp_points
from medimg.registration.intensity import (
    TASKS,
    RegistrationError,
    RegistrationResult,
    jacobian_stats,
    register,
)
from medimg.registration.points import (
    ICPResult,
    LandmarkResult,
    TargetError,
    icp,
    register_landmarks,
    register_surfaces,
    surface_points,
    target_registration_error,
)
from medimg.registration.transform import TRANSFORM_SUFFIXES, Transform

__all__ = ["register", "RegistrationResult", "RegistrationError", "TASKS", "jacobian_stats",
           "Transform", "TRANSFORM_SUFFIXES", "INTERPOLATORS", "resample_image", "resample_like", "warp_points",
           "ICPResult", "LandmarkResult", "TargetError", "icp", "register_landmarks", "register_surfaces",
           "surface_points", "target_registration_error"]
