"""exitgate.compiler"""
