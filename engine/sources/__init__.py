"""Source finding, forced photometry, crossmatching and variability metrics.

finder        background/rms maps, islands, elliptical Gaussian fits (Condon 1997 errors)
photometry    forced photometry at given sky positions
crossmatch    nearest-neighbour sky crossmatch within a radius
variability   eta, V, chi^2/nu and modulation index of a light curve
"""
