"""The denoising study: noise and PSNR, the denoisers, their jobs."""
