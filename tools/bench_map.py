"""The Clusters page's map alone, at ``BENCH_MAP_POINTS`` synthetic points: what ``python -m core bench map`` opens in
headless Chromium (a catalogue of a million products cannot be built on this machine to open the page itself).
The points are 250 clusters of 2-D Gaussian blobs with 5% noise, drawn by ``app_pages.mapview`` as the page draws
them, in the left half as there: one point per product below ``DENSITY_POINTS``, a density image above
(``BENCH_MAP_DRAW=points`` or ``density``: that way at any size). Below the map, the number of products the
selection holds, which the benchmark waits for."""
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app_pages.mapview import DENSITY_POINTS, SELECTIONS, density_chart, map_chart, selected_ids  # noqa: E402

N_CLUSTERS, NOISE = 250, 0.05


@st.cache_data(show_spinner=False)
def synthetic_map(n: int, seed: int = 0) -> pd.DataFrame:
    """A ClusterMap.frame-shaped table of ``n`` points."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-20, 20, (N_CLUSTERS, 2))
    cluster = rng.integers(0, N_CLUSTERS, n)
    xy = centres[cluster] + rng.normal(0, 0.6, (n, 2))
    noise = rng.random(n) < NOISE
    xy[noise] = rng.uniform(-22, 22, (int(noise.sum()), 2))
    cluster[noise] = -1
    names = np.array([f"cluster {c}" for c in range(N_CLUSTERS)] + ["noise"])
    return pd.DataFrame({"product_id": np.char.add("p", np.arange(n).astype(str)), "x": xy[:, 0], "y": xy[:, 1],
                         "cluster": cluster, "assigned": np.where(noise, "noise", "hdbscan"),
                         "cluster_name": names[cluster], "title": "", "product_type": "", "colour": "",
                         "pattern": ""})


st.set_page_config(layout="wide")  # as the app
n = int(os.environ.get("BENCH_MAP_POINTS", "1000000"))
frame = synthetic_map(n)
draw = os.environ.get("BENCH_MAP_DRAW", "auto")  # "points" or "density": one way whatever the size
dense = n > DENSITY_POINTS if draw == "auto" else draw == "density"
chart = density_chart(frame, key=(n,)) if dense else map_chart(frame)
left, _ = st.columns(2)  # as on the Clusters page, whose cluster list takes the right half
with left:
    event = st.altair_chart(chart, on_select="rerun", selection_mode=SELECTIONS, key="bench_map", width="stretch")
chosen = selected_ids(event["selection"] if event else None, frame)
st.markdown(f"selected products: {len(chosen)}")
