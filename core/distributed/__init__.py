"""Atelier on a Ray cluster (``--ray ADDRESS`` / ``ATELIER_RAY``): the switch, batch work on Ray Data, training on Ray
Train, the service on Ray Serve. Ray is imported only here (and by ``bench ray``), and only when a cluster is asked for
(``pip install -r requirements-ray.txt``)."""
