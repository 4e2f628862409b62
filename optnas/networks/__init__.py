"""Networks: OFA MobileNetV3 supernets (building, loading, extracting subnets), early-exit
heads, running a network on images, and the analytic cost model of the space."""
