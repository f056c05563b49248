"""studentteacher: student-teacher networks as particle systems of kernel-divergence gradient flows."""

__version__ = "0.1.0"
