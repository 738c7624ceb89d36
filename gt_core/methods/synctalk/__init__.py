"""SyncTalk (Peng et al., CVPR 2024) on the ER-NeRF stack: :mod:`.method` (the trained ``synctalk`` row) and
:mod:`.portrait` (its ``synctalk-portrait`` evaluation row)."""
