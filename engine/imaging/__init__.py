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

Sign and orientation conventions (checked by ``tests/test_imaging.py``):
the MS convention ``V(u,v,w) = sum_k S_k exp(-2 pi i (u l_k + v m_k +
w (n_k - 1)))`` with UVW in metres relative to the FIELD PHASE_DIR, ``l``
towards east (increasing RA), ``m`` towards north.  Images are stored as
``[y, x]`` arrays in FITS order: x = RA axis with CDELT1 < 0 (east to the
left), y = Dec axis, pixel ``(x, y) = (N/2, N/2)`` (0-based) is the phase
centre.
"""
