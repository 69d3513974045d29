"""StyleCLIP baselines (Patashnik et al., ICCV 2021): latent optimisation, latent mapper, global directions."""
