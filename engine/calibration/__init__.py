"""Calibration of DSA-110 continuum groups: calibrator catalogue and transit
prediction, RFI flagging, bandpass and gain solutions (StEFCal), QA gates,
CASA-layout calibration tables, interpolation and application to an MS.

Convention used everywhere in this package (per polarisation, diagonal Jones):

    V_obs_pq(t, nu) = G_p(t) B_p(nu) V_model_pq(t, nu) B_q(nu)^* G_q(t)^*

B is normalised to mean amplitude 1 per antenna and polarisation over the
unflagged channels, with zero phase at the band centre once the mean phase
slope (delay) is removed; G carries the overall amplitude.
The reference antenna's B (every channel) and G (every interval) have phase 0.
"""
