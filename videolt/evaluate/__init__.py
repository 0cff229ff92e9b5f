"""videolt.evaluate"""
