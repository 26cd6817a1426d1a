"""exitgate.boards"""
