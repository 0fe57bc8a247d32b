"""Model configuration (get_config) in Keras 3's serialized form."""
