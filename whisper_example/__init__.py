"""Federated keyword spotting with a frozen Whisper encoder, on Flower.

Where a Flower user looks first: ``server_app.py`` (the ServerApp), ``client_app.py`` (the
ClientApp) and ``config.py`` (the run config, declared in pyproject.toml). The rest, by concern:

- ``data/``: where clips come from (``sources``), how they become 1-s int16 clips (``audio``,
  ``preparation``, ``clips``) and which of them a SuperNode holds (``partitions``, ``node_data``);
- ``model/``: the frozen encoder (``encoder``), its stored features (``features``), the copies
  of training clips (``augment``), the head (``head``) and how it is trained (``training``);
- ``federation/``: how the server combines nodes (``strategy``), what they say to each other
  (``messages``), the record of a round (``round_record``), privacy, personal heads and what
  a resumed run restores (``resume_state``);
- ``runs/``: what a run leaves behind (``folder``) and streams (``tracking``), what it recorded,
  read back (``results``), and how runs differ and compare (``comparison``);
- ``inference/``: a trained head on audio: with torch (``spotter``) or exported, without torch
  (``onnx_spotter``, ``frontend``), the windows and detections both share (``windows``,
  ``detection``) and live audio (``stream``); ``predict.py`` is their command line,
  ``export.py`` writes the exported model, ``plots.py`` draws what a person looks at;
- ``system/``: the machine's limits: the disk cache, the memory budget, per-process memos,
  progress bars.

Reading order, following one training message: ``server_app.main`` builds the strategy
(``federation.strategy.build_strategy``) and starts it; the strategy's ``configure_train`` sends
the head to the sampled nodes; ``client_app.train`` checks the run config (``config``), finds the
node's clips (``data.node_data``), reads their features from the store or encodes them
(``model.augment.training_features``, ``model.features``, ``model.encoder``) and trains the
head (``model.training.train_head``); the reply (``federation.messages``) goes back through
the strategy's ``aggregate_train``, which leaves out unusable or outsized replies before
Flower's own strategy averages the rest; ``server_app`` records the round
(``federation.round_record``) and checkpoints it (``runs.folder``).
"""
