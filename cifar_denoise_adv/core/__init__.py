"""What both studies share: data, run folders, configs and apps, training, plots."""
