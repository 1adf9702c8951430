// Settings every job shares. Override per job with `+:`-style object composition or on the command line
// (`--seed=1`, `--jobs.1.epochs=2`).
{
  seed: 42,
  wandb: { enabled: false, project: 'attexp' },
}
