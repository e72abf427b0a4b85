"""R-CNN-style detection with an Inception region classifier (GoogLeNet paper, section 8).

    image -> proposals (selective search, cached)      proposals.py
            and/or MultiBox's boxes (trained first)    multibox*.py, proposal_sets.py
          -> warped regions with context padding       warp.py
          -> region classifier(s), softmax averaged    scoring.py (trained by train/ via
                                                       the 'regions:<dir>' source, regions.py)
          -> per-class NMS -> detections -> AP / mAP   boxes.py, metrics.py, report.py

Data: datasets.py (TFDS detection datasets, VOC folders, the embedded synthetic set in
synthetic.py). Configuration: config.py. The whole run: run.py, `python -m eval.detect`.
"""
