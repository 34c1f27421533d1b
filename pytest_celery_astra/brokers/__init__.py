"""The broker: which one a run uses (container, URL or memory), its URLs per xdist worker, RabbitMQ vhosts."""
