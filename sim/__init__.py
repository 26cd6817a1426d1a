"""exitgate.sim"""
