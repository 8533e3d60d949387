"""Constants shared across sciimg's packages, each defined once."""

import math

__all__ = ["FWHM_PER_SIGMA"]

#: Full width at half maximum of a Gaussian in units of its sigma, 2√(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
