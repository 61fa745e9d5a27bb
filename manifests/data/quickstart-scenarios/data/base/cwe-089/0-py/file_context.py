import sqlite3

