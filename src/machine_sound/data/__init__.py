"""The data path (config group `data`): a reader (`data/readers/`) lists recordings as an index;
`datamodule.AudioDataModule` checks every file once, splits, caches and loads waveforms."""
