//! Container metrics (cAdvisor `container_metrics`): per-container CPU, memory and disk usage
//! over a window, in one InfluxDB query. Shared by the container collector and autoscale.
