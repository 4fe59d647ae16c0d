"""The build contexts of the images: configuration files rendered from config.yaml, and the content-hash tags."""
