"""Continuum imaging of one DSA-110 measurement set.

Modules
-------
params    ``ImagingParams``: every knob of an imaging run, with defaults.
msread    read an MS into Stokes-I visibilities, weights and metadata.
weighting natural / uniform / Briggs imaging weights on the uv grid.
imager    ducc0 wgridder gridding/degridding, PSF, Clark/Hogbom CLEAN with
          major cycles, restoring-beam fit -> ``ImageResult``.
fits_io   FITS products (SIN projection, 4 axes) and PNG thumbnails.
wsclean   the same run done by an external ``wsclean`` binary.
qa        image quality checks (noise, peak, dynamic range, beam).
pipeline  ``image_ms``: the picklable entry point used by the engine.
synth     synthetic point-source measurement sets (tests, benchmarks).

Sign and orientation conventions (checked by ``tests/test_imaging.py`` and,
where wsclean is installed, ``tests/test_wsclean_backend.py``):
the visibilities in an MS relate to the sky, with the UVW column (metres,
relative to FIELD PHASE_DIR), as

    V(u,v,w) = sum_k S_k exp(+2 pi i (u l_k + v m_k + w (n_k - 1)) / lambda)

with ``l`` towards east (increasing RA) and ``m`` towards north.  This is the
convention WSClean 3.1 (and hence CASA) applies to an MS: a synthetic MS
written with the opposite sign (the ``exp(-2 pi i ...)`` form often quoted
for the MS) is imaged by WSClean point-reflected through the phase centre,
which we verified empirically.  (Equivalently: exp(-2 pi i ...) with UVW
defined as ANTENNA1 - ANTENNA2 positions.)  Images are stored as
``[y, x]`` arrays in FITS order: x = RA axis with CDELT1 < 0 (east to the
left), y = Dec axis, pixel ``(x, y) = (N/2, N/2)`` (0-based) is the phase
centre.
"""
