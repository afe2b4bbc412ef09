"""RM-trainer: Bradley-Terry reward models trained on candidate mixes, as batch Jobs."""
