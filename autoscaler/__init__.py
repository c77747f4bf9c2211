"""Queue-depth autoscaling, spot/dedicated placement and the fleet simulator."""
