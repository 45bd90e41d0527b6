"""The app packages: the Android archive (cross/scripts/build-android.sh) and the iOS bindings
(cross/scripts/build-ios.sh), built from the bindings these tests run with, as an app's build
would take them.

On a machine without the Android NDK or Xcode the scripts build everything else and must say
what they could not build; with them, the native libraries must be there too.
"""

import os
import pathlib
import shutil
import subprocess
import unittest
import xml.etree.ElementTree as ET
import zipfile

import outpost_ffi as op

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# bindings.sh writes DIR/python/outpost_ffi.py beside DIR/kotlin and DIR/swift.
BINDINGS = pathlib.Path(op.__file__).resolve().parents[1]
ABIS = ["arm64-v8a", "armeabi-v7a", "x86_64"]


def has_ndk():
    ndk = os.environ.get("ANDROID_NDK_HOME")
    return bool(ndk) and os.path.isdir(ndk) and shutil.which("cargo-ndk") is not None


def has_xcode():
    return shutil.which("xcodebuild") is not None


class AndroidArchiveTest(unittest.TestCase):
    def test_the_aar_holds_the_bindings_the_manifest_and_the_rules(self):
        run = subprocess.run(
            [ROOT / "cross/scripts/build-android.sh", "--bindings", BINDINGS, "--allow-missing-abis"],
            capture_output=True, text=True,
        )
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        version = next(
            line.split('"')[1] for line in (ROOT / "Cargo.toml").read_text().splitlines() if line.startswith("version = ")
        )
        aar = TARGET / "android" / f"outpost-ffi-{version}.aar"
        with zipfile.ZipFile(aar) as z:
            names = set(z.namelist())
            for entry in ["AndroidManifest.xml", "classes.jar", "proguard.txt", "R.txt",
                          "META-INF/com/android/build/gradle/aar-metadata.properties"]:
                self.assertIn(entry, names)
            manifest = ET.fromstring(z.read("AndroidManifest.xml"))
            self.assertEqual(manifest.get("package"), "dev.outpost.ffi")
            self.assertIn("-keep class com.sun.jna.** { *; }", z.read("proguard.txt").decode())
            jar_path = TARGET / "android" / "classes-under-test.jar"
            jar_path.write_bytes(z.read("classes.jar"))
            libraries = sorted(n for n in names if n.startswith("jni/") and n.endswith(".so"))
        with zipfile.ZipFile(jar_path) as jar:
            classes = set(jar.namelist())
        # What an app calls: the engine, its records and its typed errors.
        for cls in ["Engine", "EngineConfig", "OutpostException", "OutpostException$Closed", "ProgressListener"]:
            self.assertIn(f"uniffi/outpost_ffi/{cls}.class", classes)
        # Only the bindings: none of the Kotlin suite's test classes.
        self.assertFalse(any("Test" in c for c in classes), [c for c in classes if "Test" in c])

        if has_ndk():
            self.assertEqual(libraries, [f"jni/{abi}/liboutpost_ffi.so" for abi in ABIS])
        else:
            self.assertEqual(libraries, [])
            self.assertIn("no Android NDK", run.stderr)
            self.assertIn("WITHOUT native libraries", run.stderr)
            # Without --allow-missing-abis, an archive without libraries is a failure.
            strict = subprocess.run(
                [ROOT / "cross/scripts/build-android.sh", "--bindings", BINDINGS], capture_output=True, text=True
            )
            self.assertNotEqual(strict.returncode, 0)

        # The POM names the same JNA and coroutines as the Kotlin suite compiles against.
        pom = ET.parse(TARGET / "android" / f"outpost-ffi-{version}.pom").getroot()
        ns = {"m": "http://maven.apache.org/POM/4.0.0"}
        deps = {d.find("m:artifactId", ns).text: d.find("m:version", ns).text for d in pom.iter(f"{{{ns['m']}}}dependency")}
        suite = ET.parse(ROOT / "cross/kotlin/pom.xml").getroot().find("m:properties", ns)
        self.assertEqual(deps["jna"], suite.find("m:jna.version", ns).text)
        self.assertEqual(deps["kotlinx-coroutines-android"], suite.find("m:coroutines.version", ns).text)


class IosPackageTest(unittest.TestCase):
    def test_the_swift_bindings_header_and_module_map_are_laid_out_for_the_xcframework(self):
        run = subprocess.run(
            [ROOT / "cross/scripts/build-ios.sh", "--bindings", BINDINGS, "--allow-missing-libs"],
            capture_output=True, text=True,
        )
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        out = TARGET / "ios"
        swift = (out / "swift/outpost_ffi.swift").read_text()
        self.assertTrue("open class Engine" in swift, "no Engine class in the Swift bindings")
        self.assertIn("module outpost_ffiFFI", (out / "headers/module.modulemap").read_text())
        self.assertTrue((out / "headers/outpost_ffiFFI.h").is_file())
        if has_xcode():
            self.assertTrue((out / "Outpost.xcframework/Info.plist").is_file())
        else:
            self.assertIn("no Xcode", run.stderr)
            self.assertFalse((out / "Outpost.xcframework").exists())


if __name__ == "__main__":
    unittest.main()
